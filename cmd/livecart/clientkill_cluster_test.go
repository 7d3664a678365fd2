package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/livecart/livecart/web/auth"
)

// redisClientsNamed lists the ids of the connections whose name starts with prefix.
func redisClientsNamed(t *testing.T, rdb *redis.Client, prefix string) (ids []string, names map[string]int) {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	names = map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		f := map[string]string{}
		for _, kv := range strings.Fields(sc.Text()) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if strings.HasPrefix(f["name"], prefix) {
			ids = append(ids, f["id"])
			names[f["name"]]++
		}
	}
	return ids, names
}

// TestNodeRedisConnectionsKilled: an operator finds one node's Redis connections by
// their name (livecart:<node id>:...) in CLIENT LIST and kills them all (CLIENT KILL)
// while another node makes events: the node's viewer gets every event, in order, with
// no gap and no new snapshot, and the node serves the API again by itself.
func TestNodeRedisConnectionsKilled(t *testing.T) {
	prefix := fmt.Sprintf("lc-ckill-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	nodeB := "node-b-" + uuid.NewString()[:8]
	a := startNode(t, "node-a-"+uuid.NewString()[:8], prefix)
	b := startNode(t, nodeB, prefix)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })

	creator, mod := mint(t, auth.RoleCreator, "alice"), mint(t, auth.RoleModerator, "mia")
	var st struct{ ID string }
	call(t, "POST", a+"/api/streams", creator, map[string]string{"title": "kill"}, 201, &st)
	wb := dialWS(t, b, st.ID, "")
	snap := next(t, wb, "snapshot")
	// The viewer's join used B's store and live connections: both are named.
	_, names := redisClientsNamed(t, rdb, "livecart:"+nodeB+":")
	if names["livecart:"+nodeB+":store"] == 0 || names["livecart:"+nodeB+":live"] == 0 {
		t.Fatalf("B's Redis connections by name: got %v, want store and live ones (livecart:<node id>:...)", names)
	}

	const total = 60
	done := make(chan error, 1)
	go func() {
		for i := range total {
			req := apiRequest("POST", a+"/api/streams/"+st.ID+"/announce", mod, map[string]string{"text": fmt.Sprint("n", i)})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				done <- fmt.Errorf("announce %d: got %d", i, resp.StatusCode)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- nil
	}()
	killed := 0
	for range 3 { // kill them a few times while the announces go out
		time.Sleep(60 * time.Millisecond)
		ids, _ := redisClientsNamed(t, rdb, "livecart:"+nodeB+":")
		for _, id := range ids {
			if rdb.ClientKillByFilter(context.Background(), "ID", id).Err() == nil {
				killed++
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("killed no connection of B")
	}
	want := snap.Seq
	for got := 0; got < total; {
		wb.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, raw, err := wb.ReadMessage()
		if err != nil {
			t.Fatalf("B's viewer after %d of %d announces (seq %d): %v", got, total, want, err)
		}
		var f frame
		json.Unmarshal(raw, &f)
		if f.Type == "snapshot" || f.Seq != want+1 {
			t.Fatalf("B's viewer: got %s seq %d after seq %d, want seq %d (no gap, no snapshot)", f.Type, f.Seq, want, want+1)
		}
		want = f.Seq
		if f.Type == "announce" {
			if f.Text != fmt.Sprint("n", got) {
				t.Fatalf("B's viewer: announce %q, want n%d", f.Text, got)
			}
			got++
		}
	}
	// B serves again by itself (its pools dial anew).
	deadline := time.Now().Add(5 * time.Second)
	for readyz(b) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("B not ready within 5 s of the kills")
		}
		time.Sleep(50 * time.Millisecond)
	}
	call(t, "GET", b+"/api/streams/"+st.ID, "", nil, 200, nil)
}

// TestNodeIDNamesItsConnections: a node's Redis connections carry its id (one with
// every kind of byte node_id takes besides letters: '.', '_', '-' and digits), as
// livecart:<id>:store and :live. (A node id with a space, which Redis would refuse in
// a client name, is refused at start: TestConfigValidation.)
func TestNodeIDNamesItsConnections(t *testing.T) {
	prefix := fmt.Sprintf("lc-ckname-%s", uuid.NewString()[:8])
	cleanupPrefix(t, prefix)
	id := "node_" + uuid.NewString()[:8] + ".1"
	b := startNode(t, id, prefix)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })
	if got := readyz(b); got != 200 {
		t.Fatalf("readyz: got %d, want 200", got)
	}
	var st struct{ ID string }
	call(t, "POST", b+"/api/streams", mint(t, auth.RoleCreator, "alice"), map[string]string{"title": "odd"}, 201, &st)
	next(t, dialWS(t, b, st.ID, ""), "snapshot")
	_, names := redisClientsNamed(t, rdb, "livecart:"+id+":")
	if len(names) != 2 {
		t.Fatalf("connections named after the node: got %v, want livecart:%s:store and :live", names, id)
	}
}

// TestRedisClientName: every byte Redis refuses in a client name (outside '!'..'~')
// becomes one '_'; the rest of the node id is kept.
func TestRedisClientName(t *testing.T) {
	for _, tc := range []struct{ node, want string }{
		{"node-a", "livecart:node-a:live"},
		{"node a\t1", "livecart:node_a_1:live"},
		{"nœud", "livecart:n__ud:live"}, // œ is two bytes
		{"a~!b", "livecart:a~!b:live"},
	} {
		if got := redisClientName(tc.node, "live"); got != tc.want {
			t.Errorf("redisClientName(%q): got %q, want %q", tc.node, got, tc.want)
		}
	}
}
