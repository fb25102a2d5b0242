"""Alerts in the stream workers: the evaluator that reads rules and rollups every interval, decides the
transitions, and delivers them as signed webhooks (docs/alerts.md). ``service.py`` runs it in a worker."""
