"""What the two SDK packages share: the usage-limit checker (``meterline_sdk.limits``).

``gt8004`` and ``billing_sdk`` never import each other (an agent may use either alone); code both need
lives here, at the bottom of the SDK distribution, and imports nothing of Meterline's.
"""
