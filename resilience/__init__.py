"""resilience: a chaos and resilience testing harness for the school-meal ordering platform."""

__version__ = "0.1.0"
