"""Operations: the operator page (page.py) served on the daemon's operations address."""
