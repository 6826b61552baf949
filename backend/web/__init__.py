"""The HTTP side: the Flask app factory, its blueprints (the API, Open Inference Protocol v2,
explanations, the docs), the OpenAPI description and the request plumbing they share.
"""
