"""Running untrusted programs and bounding scorers: the sandbox and the bounded scorer pool."""
