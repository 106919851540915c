#ifndef PKG03_L03_03_H
#define PKG03_L03_03_H
#include <string>
#include <vector>

namespace l03_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_03

#endif
