"""What `stream/` and `triton_repo/` share, and neither owns: user-facing errors, background processes
with pid files, free ports. Kept apart so the serving side imports nothing of the stream (and the
stream nothing of the serving side's internals)."""
