"""Local HTTP fakes of Discord and Vertex AI (Veo), driven by the real SDK clients."""
