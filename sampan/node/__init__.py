"""The node side of Sampan: what runs on (or stands in for) a node."""
