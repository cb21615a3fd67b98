package sim

// words are the simulated vocabulary: plain lowercase ASCII, so they need no JSON escaping.
var words = [...]string{
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
	"by", "this", "are", "from", "at", "or", "an", "have", "not", "which", "but", "all", "were",
	"when", "we", "there", "can", "more", "one", "will", "their", "if", "about", "has", "time",
	"two", "would", "other", "what", "some", "into", "out", "up", "them", "so", "these", "then",
	"its", "than", "only", "new", "may", "like", "first", "any", "over", "also", "many", "after",
	"most", "made", "where", "through", "back", "much", "before", "must", "our", "such", "well",
	"way", "even", "because", "same", "each", "those", "long", "while", "own", "both", "under",
	"last", "never", "high", "place", "small", "world", "large", "still", "between", "found",
	"life", "day", "three", "name", "great", "water", "light", "every", "house", "public",
	"system", "part", "point", "state", "city", "river", "early", "number", "open", "began",
	"around", "left", "right", "often", "night", "side", "order", "without", "model", "token",
	"answer", "question", "simple",
}
