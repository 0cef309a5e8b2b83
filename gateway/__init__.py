"""Social prescribing interoperability gateway."""

__version__ = "0.1.0"

# How every refusal is answered is decided in one place; loading it installs it.
from gateway import refusals as _refusals  # noqa: F401
