import random

import pytest

from shared.backoff import retry_delay


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8, 20, 500])
def test_delay_within_jitter_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(60.0, 2.0 * 2 ** min(attempt - 1, 64))
    for _ in range(200):
        d = retry_delay(attempt, base=2.0, cap=60.0, rng=rng)
        assert ceiling / 2 <= d <= ceiling


def test_grows_exponentially_until_the_cap() -> None:
    lows = [retry_delay(a, base=1.0, cap=30.0, rng=_Fixed(0.0)) for a in range(1, 8)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    highs = [retry_delay(a, base=1.0, cap=30.0, rng=_Fixed(1.0)) for a in range(1, 8)]
    assert highs == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_spreads_a_burst() -> None:
    rng = random.Random(7)
    delays = {round(retry_delay(3, base=2.0, cap=300.0, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, base=1.0, cap=10.0)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value
