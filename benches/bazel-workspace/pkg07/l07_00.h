#ifndef PKG07_L07_00_H
#define PKG07_L07_00_H
#include <string>
#include <vector>

namespace l07_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_00

#endif
