"""Configuration: kube-vip's environment variables and kvip's flags → typed, validated settings.

Owns the option table, the value parsers and the settings objects handed to every other layer; it
reads the environment it is given and nothing else. Every problem is reported at once, one line per
variable, never as a traceback. Imports only `kvip.core`.
"""
