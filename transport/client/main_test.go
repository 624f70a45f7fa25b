package client

import (
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }
