"""Enterprise document QA and a chatbot over a ResRankIndex, with a web page and a terminal mode."""
