SELECT version::text, schema_version FROM fetchq.info()
