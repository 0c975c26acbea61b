"""fntrace's core: ops, sites, trampolines, backends. Depends on nothing above it."""
