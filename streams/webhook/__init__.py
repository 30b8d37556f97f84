"""The feedback webhook (issue 5): request signing so far; the HTTP server comes next."""
