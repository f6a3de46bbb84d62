"""Partner Center: authentication, HTTP client, wire shapes and their conversion to the model."""
