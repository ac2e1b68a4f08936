"""The web console: server-rendered pages and a JSON API over the store (see `syncd.web.app`)."""
