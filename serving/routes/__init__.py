"""The API's routers, one module per resource; ``serving.app`` mounts them."""
