"""The content service's Prometheus metrics."""

from prometheus_client import Counter

PROMPTS = Counter(
    "tandem_prompts_chosen_total",
    "Nudges composed, by the deck their prompt came from (a redelivery counts again)",
    ["deck"],
)
