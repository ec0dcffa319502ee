"""The web console: runs, models, features, datasets, deployments and monitoring in one place (FastAPI,
server-rendered pages with offline plotly charts, each with a JSON twin under /api)."""

from raymlops.console.app import create_app
from raymlops.console.context import Settings


def serve_console(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Runs the console until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings, warm=True), host=host, port=port, log_level="warning")


__all__ = ["Settings", "create_app", "serve_console"]
