"""pixelseg's tests. Every folder here is a package, so helpers import as
`from tests.helpers import ...` (tests/README.md)."""
