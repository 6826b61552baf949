"""Request limits of the backend tests' app and servers: small, so each limit is cheap to cross,
and shared so the test config and the cases that cross it cannot disagree."""

MAX_BODY, MAX_PIXELS, MAX_BATCH = 4_000_000, 1_000_000, 16

# The same limits as VISION_* settings, for a real server.
LIMITS_ENV = {"VISION_MAX_BODY_BYTES": str(MAX_BODY), "VISION_MAX_PIXELS": str(MAX_PIXELS),
              "VISION_MAX_BATCH": str(MAX_BATCH)}
