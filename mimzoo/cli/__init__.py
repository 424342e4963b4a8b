"""The `mimzoo` command line (click). Only this package prints; the library logs."""
