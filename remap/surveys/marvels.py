from remap.hookspecs import hookimpl  # work in progress
