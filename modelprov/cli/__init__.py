"""The `modelprov` command line: a thin click layer over the library's public API."""
