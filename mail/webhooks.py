"""Receivers of django-anymail's tracking signal: deliveries, bounces, complaints. Slice "mail-tracking"."""
