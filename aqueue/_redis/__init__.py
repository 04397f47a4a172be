"""The data model in Redis, defined once for Python and Lua: the keyspace, the records
and wire formats, the scripts (one atomic operation each) and the store that calls them.
"""
