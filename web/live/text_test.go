package live

import "testing"

func TestValidJSONText(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"text":"plain é 😀"}`, true},
		{`{"text":"\ud83d\ude00"}`, true},
		{`{"text":"\uD83D\uDE00 and \u00e9"}`, true},
		{`{"text":"\\ud800"}`, true},        // an escaped backslash, then text
		{`{"text":"\\\ud83d\ude00"}`, true}, // a backslash, then a pair
		{`{"text":"\u12"}`, true},           // malformed: the decoder's to refuse
		{`{"text":"\ud800"}`, false},
		{`{"text":"\udfff"}`, false},
		{`{"text":"\ud83d\u0041"}`, false},
		{`{"text":"\ud83d\ud83d\ude00"}`, false},
		{`{"text":"\ud83d`, false},
		{"{\"text\":\"\xff\"}", false},
	}
	for _, tt := range tests {
		if got := ValidJSONText([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidJSONText(%s): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
