"""The HTTP service: jobs, events and results over aiohttp, with its OpenAPI document."""
