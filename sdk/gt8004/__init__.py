"""GT8004 request logging SDK (public API filled by the SDK issue)."""

__all__: list[str] = []
