"""The society: scheduler, conversation engine, episode records and store, the graph."""
