"""A server-rendered Kuwaiti storefront that takes payments through KNET."""
