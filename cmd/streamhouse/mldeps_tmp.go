package main

import _ "github.com/hashicorp/memberlist"
