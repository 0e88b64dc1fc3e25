"""The shard format: annotation schemas, manifests, the shard writer, the tar reader, shard URLs, `vau shards inspect`."""
