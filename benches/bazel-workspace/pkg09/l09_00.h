#ifndef PKG09_L09_00_H
#define PKG09_L09_00_H
#include <string>
#include <vector>

namespace l09_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_00

#endif
