#ifndef PKG09_L09_02_H
#define PKG09_L09_02_H
#include <string>
#include <vector>

namespace l09_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_02

#endif
