"""Data for the demo, the tests and the benchmarks: datasets, a built-in generator of chat
messages, and replayable traffic scenarios with a drift in them."""
