"""``python -m backend``: run the inference service on Waitress (configuration from VISION_* env)."""

import sys

from backend.config import Config, ConfigError


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"backend: configuration error: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1 and config.listen_fd is None:
        # The supervisor serves nothing itself: importing it alone keeps Flask and ONNX Runtime
        # out of this process (RSS 23 MiB instead of 83 MiB, measured).
        from backend.supervisor import main as run
    else:
        from backend.server import main as run
    return run(config)


sys.exit(main())
