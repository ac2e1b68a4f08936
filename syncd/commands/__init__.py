"""One module per CLI command: `async def run(args, settings) -> int`."""
