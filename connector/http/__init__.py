"""HTTP plumbing shared by every REST client: the https-only session and the retry policy."""
