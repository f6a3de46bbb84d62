"""The daemon: scheduled cycles per connection, signals, and the ops HTTP server."""
