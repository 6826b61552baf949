"""``python -m backend``: run the inference service on Waitress (configuration from VISION_* env).

Any start failure is one clear line on stderr and a non-zero exit status.
"""

import sys

from backend.config import Config, ConfigError
from backend.errors import ModelLoadError, WorkerError
from backend.logs import configure_logging


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"backend: configuration error: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1 and config.listen_fd is None:
        # The supervisor serves only the metrics port: importing it alone keeps Flask and ONNX
        # Runtime out of this process (RSS 23 MiB instead of 83 MiB, measured before it served it).
        from backend.runtime.supervisor import supervise as run

        configure_logging(config.log_level)  # serve() does this itself on the other path
    else:
        from backend.runtime.server import serve as run
    try:
        run(config)
    except ModelLoadError as exc:
        print(f"backend: cannot load models: {exc}", file=sys.stderr)
        return 1
    except WorkerError as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"backend: cannot listen on {config.host}:{config.port} (API) / {config.metrics_port} (metrics): "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
