"""What refuses work before it costs: API keys, rate limits, the memory, spool and explanation
budgets, and the Waitress-level guard that applies them before a request body is read.
"""
