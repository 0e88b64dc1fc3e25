"""Media decoding: exact-frame video, audio, images, features; frame sampling; the per-sample decoder."""
