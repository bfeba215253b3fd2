"""dota"""
