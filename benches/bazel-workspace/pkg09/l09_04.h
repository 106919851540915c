#ifndef PKG09_L09_04_H
#define PKG09_L09_04_H
#include <string>
#include <vector>

namespace l09_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_04

#endif
