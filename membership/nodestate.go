package membership

import (
	"errors"
	"reflect"
	"sync"

	"github.com/hashicorp/memberlist"
)

// stateReader reads memberlist's own view of a member's state: suspect, and
// left as opposed to dead.
//
// Why it reaches into memberlist: memberlist has no callback for suspicion
// (only join, leave and update), and NotifyLeave does not say whether the
// node left or died: the State of the *Node it passes is never set (its
// nodeState shadows it with a State field of its own). The real state sits
// in memberlist's node table under its unexported nodeLock, and reading it
// outside that lock is a data race (hashicorp/memberlist#306, #250).
// stateReader finds the lock and the table by name, checks their types
// once, and reads only names and states, holding the lock or inside a
// memberlist callback, which holds it.
//
// newStateReader fails if a memberlist upgrade changed that layout;
// TestStateReader catches it, and New then runs without suspect status
// (members are alive until declared dead) and reports every leave as a
// failure rather than guess.
type stateReader struct {
	lock  *sync.RWMutex
	nodes reflect.Value // memberlist.Memberlist.nodes, []*nodeState
	name  []int         // field index of nodeState.Name (promoted from Node)
	state []int         // field index of nodeState.State
}

func newStateReader(ml *memberlist.Memberlist) (*stateReader, error) {
	v := reflect.ValueOf(ml).Elem()
	lock := v.FieldByName("nodeLock")
	if !lock.IsValid() || lock.Type() != reflect.TypeFor[sync.RWMutex]() {
		return nil, errors.New("memberlist.Memberlist has no nodeLock sync.RWMutex")
	}
	nodes := v.FieldByName("nodes")
	if !nodes.IsValid() || nodes.Kind() != reflect.Slice ||
		nodes.Type().Elem().Kind() != reflect.Pointer || nodes.Type().Elem().Elem().Kind() != reflect.Struct {
		return nil, errors.New("memberlist.Memberlist has no nodes []*nodeState")
	}
	st := nodes.Type().Elem().Elem()
	name, ok := st.FieldByName("Name")
	if !ok || name.Type.Kind() != reflect.String {
		return nil, errors.New("memberlist nodeState has no Name string")
	}
	state, ok := st.FieldByName("State")
	if !ok || state.Type != reflect.TypeFor[memberlist.NodeStateType]() {
		return nil, errors.New("memberlist nodeState has no State NodeStateType")
	}
	return &stateReader{
		lock:  (*sync.RWMutex)(lock.Addr().UnsafePointer()),
		nodes: nodes,
		name:  name.Index,
		state: state.Index,
	}, nil
}

// suspects is the names of the members memberlist holds as suspect now.
// The caller must not be inside a memberlist callback (the lock is not
// reentrant).
func (r *stateReader) suspects() map[string]bool {
	r.lock.RLock()
	defer r.lock.RUnlock()
	var out map[string]bool
	for i := range r.nodes.Len() {
		name, state := r.node(i)
		if state == memberlist.StateSuspect {
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
	}
	return out
}

// stateInCallback is memberlist's state for the named member. Only for
// memberlist's EventDelegate callbacks, which run with the node lock held
// for writing: taking it again would deadlock, and is not needed.
func (r *stateReader) stateInCallback(name string) (memberlist.NodeStateType, bool) {
	for i := range r.nodes.Len() {
		if n, state := r.node(i); n == name {
			return state, true
		}
	}
	return 0, false
}

func (r *stateReader) node(i int) (string, memberlist.NodeStateType) {
	n := r.nodes.Index(i).Elem()
	return n.FieldByIndex(r.name).String(), memberlist.NodeStateType(n.FieldByIndex(r.state).Int())
}
