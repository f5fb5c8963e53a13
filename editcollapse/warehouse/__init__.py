"""The only code that reads and writes stage Parquet; DuckDB views over it."""
