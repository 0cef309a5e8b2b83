"""Write-back: what the gateway sends to a referral's source system when an outcome arrives."""
