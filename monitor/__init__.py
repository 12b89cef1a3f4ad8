"""Model-quality monitoring after deployment: the feedback store, live accuracy, and the update loop."""

from tuneship.monitor.store import DEFAULT_URL, FeedbackStore, ImportResult, Labelled, PredictionLog, StoreError

__all__ = ["DEFAULT_URL", "FeedbackStore", "ImportResult", "Labelled", "PredictionLog", "StoreError"]
