"""Re-execute a recorded notebook in a fresh sandbox: replay (compare the outputs) and
restore (rebuild a kernel's state and check it against the recorded manifests)."""
